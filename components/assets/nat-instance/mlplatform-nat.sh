#!/usr/bin/env bash
# Makes this instance the VPC's NAT. Runs at every boot (mlplatform-nat.service) and is idempotent.
#
# The private route tables send 0.0.0.0/0 to a fixed network interface (ENI_ID) that Pulumi owns,
# so a replacement instance only has to attach it: no route is ever rewritten at runtime. Traffic
# from the VPC arrives on that interface and leaves, masqueraded, through this instance's primary
# interface and its public IPv4 address.
set -euo pipefail

# shellcheck source=/dev/null
. /etc/mlplatform-nat.env
: "${ENI_ID:?ENI_ID is not set}" "${VPC_CIDR:?VPC_CIDR is not set}"

IMDS=http://169.254.169.254/latest

imds() {
  local token
  token=$(curl -fsS -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" "${IMDS}/api/token")
  curl -fsS -H "X-aws-ec2-metadata-token: ${token}" "${IMDS}/meta-data/$1"
}

# The MAC address of the attached interface whose ENI id is $1, or nothing.
mac_of() {
  local mac
  for mac in $(imds network/interfaces/macs/); do
    if [ "$(imds "network/interfaces/macs/${mac}interface-id")" = "$1" ]; then
      echo "${mac%/}"
      return 0
    fi
  done
}

# The kernel's name for the interface with MAC $1 (ens5, ens6, ...).
link_of() {
  ip -o link | awk -v mac="$1" 'index($0, mac) { sub(":", "", $2); print $2; exit }'
}

AWS_DEFAULT_REGION=$(imds placement/region)
export AWS_DEFAULT_REGION
instance_id=$(imds instance-id)
primary_mac=$(imds mac)
primary_eni=$(imds "network/interfaces/macs/${primary_mac}/interface-id")

# Replies to VPC clients leave through the primary interface with the client as destination and
# the remote host as source: the primary interface must not drop them.
aws ec2 modify-network-interface-attribute \
  --network-interface-id "${primary_eni}" --no-source-dest-check

# A predecessor that is still shutting down may hold the interface for a while: keep trying.
for _ in $(seq 1 60); do
  [ -n "$(mac_of "${ENI_ID}")" ] && break
  aws ec2 attach-network-interface \
    --instance-id "${instance_id}" --network-interface-id "${ENI_ID}" --device-index 1 || true
  sleep 5
done
route_mac=$(mac_of "${ENI_ID}")
if [ -z "${route_mac}" ]; then
  echo "mlplatform-nat: could not attach ${ENI_ID}" >&2
  exit 1
fi
for _ in $(seq 1 60); do
  [ -n "$(link_of "${route_mac}")" ] && break
  sleep 1
done

public_if=$(link_of "${primary_mac}")
route_if=$(link_of "${route_mac}")
: "${public_if:?no link for ${primary_mac}}" "${route_if:?no link for ${route_mac}}"

sysctl -qw net.ipv4.ip_forward=1
# Packets enter on the route interface and leave on the primary one: strict reverse-path
# filtering would drop them.
for conf in all default "${public_if}" "${route_if}"; do
  sysctl -qw "net.ipv4.conf.${conf}.rp_filter=0"
done
sysctl -qw "net.ipv4.conf.${route_if}.send_redirects=0"

# AWS's own NAT AMI recipe for AL2023 installs iptables the same way.
command -v iptables >/dev/null 2>&1 || dnf install -y -q iptables-nft
rule=(POSTROUTING -s "${VPC_CIDR}" -o "${public_if}" -j MASQUERADE)
iptables -t nat -C "${rule[@]}" 2>/dev/null || iptables -t nat -A "${rule[@]}"

echo "mlplatform-nat: ${route_if} (${ENI_ID}) -> ${public_if}, masquerading ${VPC_CIDR}"
