#!/usr/bin/env bash
# Build the Pulumi engine from the Go module proxy, outside the repository, for the engine tests
# (tests/integration/test_engine_render.py; docs/integration-tests.md).
#
#   scripts/build-engine.sh [OUT]        # OUT defaults to ~/.cache/ml-platform-engine
#   export MLPLATFORM_ENGINE_DIR=OUT
#
# OUT gets: pulumi, pulumi-language-python (+ pulumi-language-python-exec),
# pulumi-resource-pulumi-python (the SDK's dynamic-provider shim, as every Pulumi CLI ships it),
# pulumi-resource-kubernetes, policy-venv (the policy pack's requirements, from PyPI) and VERSION.
# When VERSION matches the versions below (and policies/requirements.txt), nothing is rebuilt;
# FORCE=1 rebuilds. Sources and logs go to OUT/src. Cold: ~3 GB of modules and about 15 minutes on
# 2 cores; warm GOMODCACHE/GOCACHE: a few minutes. Nothing is written into the repository.
#
# Versions are what the module proxy serves, closest to the SDKs in uv.lock:
# - pulumi: pkg/v3 v3.274.1. The lock's Python SDK is 3.272.0, but the proxy does not serve
#   pkg/v3@v3.272.0 (nor 3.271/3.273); a newer CLI runs older SDKs.
# - Python language host: its module (sdk/python/cmd/pulumi-language-python/v3) is not served at
#   any version, so a minimal host written for this project is built from the source embedded
#   below, on the SDK's own python/toolchain package; the exec shim is the SDK's own.
# - pulumi-resource-kubernetes: provider/v4 is served only at the pseudo-version below
#   (January 2026, ~v4.25); the lock's pulumi_kubernetes is 4.34.2. The provider is found on PATH
#   (ambient), so the version the SDK asks for does not need to match.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$(realpath -m "${1:-$HOME/.cache/ml-platform-engine}")"
SRC="$OUT/src"
PULUMI_VERSION="${PULUMI_VERSION:-v3.274.1}"
K8S_PROVIDER_VERSION="${K8S_PROVIDER_VERSION:-v4.0.0-20260115033456-f47bc2d6f199}"
# provider/v4 replaces sdk/v4 with ../sdk and requires v4.24.0, which is not served. v4.29.0 pulls
# in sdk/v3 v3.226.0, whose API no longer matches the provider's pkg/v3 v3.215.0; v4.22.2 keeps
# sdk/v3 at v3.215.0 and has the few Go SDK packages the provider imports (kubernetes, yaml/v2,
# helm/v4).
K8S_SDK_VERSION="${K8S_SDK_VERSION:-v4.22.2}"

# Bump RECIPE when the way things are built changes, so cached builds are redone.
RECIPE=2
STAMP="pulumi=$PULUMI_VERSION kubernetes-provider=$K8S_PROVIDER_VERSION kubernetes-sdk=$K8S_SDK_VERSION"
STAMP+=" policy-requirements=$(sha256sum "$REPO/policies/requirements.txt" | cut -c1-12) recipe=$RECIPE"
BINARIES=(pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python
  pulumi-resource-kubernetes policy-venv/bin/python)
log() { printf '[build-engine] %s\n' "$*" >&2; }

up_to_date() {
  [ "$(cat "$OUT/VERSION" 2>/dev/null)" = "$STAMP" ] || return 1
  local b
  for b in "${BINARIES[@]}"; do [ -x "$OUT/$b" ] || return 1; done
}
if [ -z "${FORCE:-}" ] && up_to_date; then
  log "up to date in $OUT ($STAMP)"
  exit 0
fi
log "building into $OUT ($STAMP; was: $(cat "$OUT/VERSION" 2>/dev/null || echo none))"
rm -f "$OUT/VERSION"

export CGO_ENABLED=0 GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" GOFLAGS=-mod=mod
NICE=(nice -n "${NICENESS:-19}") # the machine is shared; keep the compiler out of everyone else's way
mkdir -p "$OUT" "$SRC"

# Copy a module out of the module cache into a writable folder: `go install mod@version` refuses
# modules whose go.mod has replace directives (golang/go#44840), so they are edited and built here.
module_copy() { # module version dest
  local dir
  dir="$(go mod download -json "$1@$2" | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if d.get("Error") else print(d["Dir"])')"
  rm -rf "$3"
  cp -r "$dir" "$3"
  chmod -R u+w "$3"
}

log "pulumi CLI $PULUMI_VERSION"
module_copy github.com/pulumi/pulumi/pkg/v3 "$PULUMI_VERSION" "$SRC/pulumi-pkg"
(
  cd "$SRC/pulumi-pkg"
  go mod edit -dropreplace=github.com/pulumi/pulumi/sdk/v3 \
    -require="github.com/pulumi/pulumi/sdk/v3@$PULUMI_VERSION"
  # Without the version the CLI reports an empty version and RequirePulumiVersion checks break.
  "${NICE[@]}" go build -o "$OUT/pulumi" \
    -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" \
    ./cmd/pulumi
)

log "pulumi-language-python (minimal host on sdk/v3 $PULUMI_VERSION)"
mkdir -p "$SRC/language-python"
cat >"$SRC/language-python/go.mod" <<EOF
module mlplatform.local/pulumi-language-python

go 1.26

require github.com/pulumi/pulumi/sdk/v3 $PULUMI_VERSION
EOF
cat >"$SRC/language-python/main.go" <<'GOEOF'
// Minimal Python language host for the ml-platform engine tests.
//
// The upstream host (module github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3)
// is not served by the Go module proxy this project can reach, so this stand-in implements the
// parts of the LanguageRuntime protocol that `pulumi preview/up --policy-pack` use, on top of the
// SDK's own Python toolchain package: Run (programs, through pulumi-language-python-exec),
// RunPlugin (policy packs), InstallDependencies, and the informational calls. Code generation
// and packing are left unimplemented.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/logging"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/version"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Exit code of pulumi-language-python-exec after it printed an actionable message itself.
const bailExitCode = 32

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	exec          string
	engineAddress string
	tracing       string
}

func main() {
	var tracing string
	flag.StringVar(&tracing, "tracing", "", "Emit tracing to a Zipkin-compatible tracing endpoint")
	// Accepted for compatibility with how the engine launches language hosts.
	flag.String("virtualenv", "", "[obsolete]")
	flag.String("root", "", "[obsolete]")
	flag.String("typechecker", "", "[obsolete]")
	flag.String("toolchain", "pip", "[obsolete]")
	flag.Parse()
	logging.InitLogging(false, 0, false)

	self, err := os.Executable()
	if err != nil {
		cmdutil.Exit(fmt.Errorf("could not determine current executable: %w", err))
	}
	execScript := filepath.Join(filepath.Dir(self), "pulumi-language-python-exec")
	if _, err := os.Stat(execScript); err != nil {
		cmdutil.Exit(fmt.Errorf("missing executor %s: %w", execScript, err))
	}

	h := &host{exec: execScript, tracing: tracing}
	if args := flag.Args(); len(args) > 0 {
		h.engineAddress = args[0]
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	cancelChannel := make(chan bool)
	go func() {
		<-ctx.Done()
		cancel()
		close(cancelChannel)
	}()
	if h.engineAddress != "" {
		if err := rpcutil.Healthcheck(ctx, h.engineAddress, 5*time.Minute, cancel); err != nil {
			cmdutil.Exit(fmt.Errorf("could not start health check: %w", err))
		}
	}

	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: cancelChannel,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, h)
			return nil
		},
	})
	if err != nil {
		cmdutil.Exit(fmt.Errorf("could not start language host RPC server: %w", err))
	}
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		cmdutil.Exit(fmt.Errorf("language host RPC stopped serving: %w", err))
	}
}

func parseOptions(info *pulumirpc.ProgramInfo) (toolchain.PythonOptions, error) {
	opts := toolchain.PythonOptions{Root: info.RootDirectory, ProgramDir: info.ProgramDirectory}
	raw := info.Options.AsMap()
	if v, ok := raw["virtualenv"]; ok {
		s, ok := v.(string)
		if !ok {
			return opts, errors.New("virtualenv option must be a string")
		}
		opts.Virtualenv = s
	}
	if v, ok := raw["toolchain"]; ok {
		switch v {
		case "pip":
			opts.Toolchain = toolchain.Pip
		case "uv":
			opts.Toolchain = toolchain.Uv
		case "poetry":
			opts.Toolchain = toolchain.Poetry
		default:
			return opts, fmt.Errorf("unsupported toolchain option %v (allowed: pip, uv, poetry)", v)
		}
	}
	if _, ok := raw["typechecker"]; ok {
		return opts, errors.New("the typechecker option is not supported by this language host")
	}
	return opts, nil
}

func (h *host) Handshake(ctx context.Context,
	req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.engineAddress = req.EngineAddress
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

// Plugins are found on PATH (ambient) by the engine, so no package list is needed up front.
func (h *host) GetRequiredPackages(ctx context.Context,
	req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

func (h *host) GetRequiredPlugins(ctx context.Context,
	req *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

func (h *host) GetPluginInfo(ctx context.Context, _ *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version.Version}, nil
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	opts, err := parseOptions(req.Info)
	if err != nil {
		return nil, err
	}
	tc, err := toolchain.ResolveToolchain(opts)
	if err != nil {
		return nil, err
	}
	if err := tc.ValidateVenv(ctx); err != nil {
		return nil, err
	}

	args := []string{h.exec}
	add := func(k, v string) {
		if v != "" {
			args = append(args, "--"+k, v)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", h.engineAddress)
	add("project", req.GetProject())
	add("root_directory", req.GetInfo().GetRootDirectory())
	add("stack", req.GetStack())
	add("pwd", req.GetPwd())
	add("dry_run", strconv.FormatBool(req.GetDryRun()))
	add("parallel", strconv.Itoa(int(req.GetParallel())))
	add("tracing", h.tracing)
	add("organization", req.GetOrganization())
	args = append(args, req.GetInfo().GetEntryPoint())
	args = append(args, req.GetArgs()...)

	cfg := req.GetConfig()
	if cfg == nil {
		cfg = map[string]string{} // the exec shim expects an object, never null
	}
	config, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("failed to serialize configuration: %w", err)
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secretKeysJSON, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, fmt.Errorf("failed to serialize configuration secret keys: %w", err)
	}

	cmd, err := tc.Command(ctx, args...)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, "PULUMI_CONFIG="+string(config), "PULUMI_CONFIG_SECRET_KEYS="+string(secretKeysJSON))

	if err := cmd.Run(); err != nil {
		_ = os.Stdout.Sync()
		_ = os.Stderr.Sync()
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if status, ok := exitErr.Sys().(syscall.WaitStatus); ok && status.ExitStatus() == bailExitCode {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			return &pulumirpc.RunResponse{
				Error: fmt.Sprintf("program exited with non-zero exit code: %d", exitErr.ExitCode()),
			}, nil
		}
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("problem executing program (could not run language executor): %v", err),
		}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

// RunPlugin runs a plugin directory's __main__.py (how Python policy packs are laid out) in the
// plugin's virtual environment, "venv" unless its PulumiPolicy.yaml says otherwise.
func (h *host) RunPlugin(req *pulumirpc.RunPluginRequest, server pulumirpc.LanguageRuntime_RunPluginServer) error {
	opts, err := parseOptions(req.Info)
	if err != nil {
		return err
	}
	if opts.Toolchain == toolchain.Pip && opts.Virtualenv == "" {
		opts.Virtualenv = "venv"
	}
	tc, err := toolchain.ResolveToolchain(opts)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(req.Info.ProgramDirectory, "__main__.py")); err != nil {
		return fmt.Errorf("plugin %s has no __main__.py: %w", req.Info.ProgramDirectory, err)
	}
	cmd, err := tc.Command(server.Context(), append([]string{req.Info.ProgramDirectory}, req.Args...)...)
	if err != nil {
		return err
	}
	closer, stdout, stderr, err := rpcutil.MakeRunPluginStreams(server, false)
	if err != nil {
		return err
	}
	defer closer.Close()
	cmd.Dir = req.Pwd
	cmd.Env = append(cmd.Env, req.Env...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			//nolint:gosec // exit codes fit in 8 bits
			return server.Send(&pulumirpc.RunPluginResponse{
				Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: int32(exitErr.ExitCode())},
			})
		}
		return fmt.Errorf("could not run plugin program: %w", err)
	}
	return closer.Close()
}

func (h *host) InstallDependencies(
	req *pulumirpc.InstallDependenciesRequest, server pulumirpc.LanguageRuntime_InstallDependenciesServer,
) error {
	opts, err := parseOptions(req.Info)
	if err != nil {
		return err
	}
	if req.IsPlugin && opts.Toolchain == toolchain.Pip && opts.Virtualenv == "" {
		opts.Virtualenv = "venv"
	}
	closer, stdout, stderr, err := rpcutil.MakeInstallDependenciesStreams(server, req.IsTerminal)
	if err != nil {
		return err
	}
	defer closer.Close()
	tc, err := toolchain.ResolveToolchain(opts)
	if err != nil {
		return err
	}
	if err := tc.InstallDependencies(server.Context(), req.Info.ProgramDirectory, req.UseLanguageVersionTools,
		true, stdout, stderr); err != nil {
		return err
	}
	return closer.Close()
}

func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	opts := toolchain.PythonOptions{Toolchain: toolchain.Pip}
	if req != nil && req.Info != nil {
		var err error
		if opts, err = parseOptions(req.Info); err != nil {
			return nil, err
		}
	}
	tc, err := toolchain.ResolveToolchain(opts)
	if err != nil {
		return nil, err
	}
	info, err := tc.About(ctx)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.AboutResponse{Executable: info.PythonExecutable, Version: info.PythonVersion.String()}, nil
}

func (h *host) GetProgramDependencies(ctx context.Context,
	req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	opts, err := parseOptions(req.Info)
	if err != nil {
		return nil, err
	}
	tc, err := toolchain.ResolveToolchain(opts)
	if err != nil {
		return nil, err
	}
	pkgs, err := tc.ListPackages(ctx, req.TransitiveDependencies)
	if err != nil {
		return nil, fmt.Errorf("failed to get python dependencies: %w", err)
	}
	deps := make([]*pulumirpc.DependencyInfo, len(pkgs))
	for i, p := range pkgs {
		deps[i] = &pulumirpc.DependencyInfo{Name: p.Name, Version: p.Version}
	}
	return &pulumirpc.GetProgramDependenciesResponse{Dependencies: deps}, nil
}
GOEOF
(
  cd "$SRC/language-python"
  go mod tidy
  "${NICE[@]}" go build -o "$OUT/pulumi-language-python" \
    -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" .
)
sdk_dir="$(go mod download -json "github.com/pulumi/pulumi/sdk/v3@$PULUMI_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
install -m 0755 "$sdk_dir/python/cmd/pulumi-language-python-exec" "$OUT/pulumi-language-python-exec"
# Dynamic providers (components/generated_secret.py) run through this shim, which the CLI's
# own distribution ships next to the language host.
install -m 0755 "$sdk_dir/python/dist/pulumi-resource-pulumi-python" "$OUT/pulumi-resource-pulumi-python"

log "pulumi-resource-kubernetes $K8S_PROVIDER_VERSION"
module_copy github.com/pulumi/pulumi-kubernetes/provider/v4 "$K8S_PROVIDER_VERSION" "$SRC/k8s-provider"
(
  cd "$SRC/k8s-provider"
  go mod edit -dropreplace=github.com/pulumi/pulumi-kubernetes/sdk/v4 \
    -require="github.com/pulumi/pulumi-kubernetes/sdk/v4@$K8S_SDK_VERSION"
  k8s_version="${K8S_PROVIDER_VERSION#v}"
  # schema-embed.json is generated at release time, not shipped in the module.
  (cd cmd/pulumi-resource-kubernetes && VERSION="$k8s_version" "${NICE[@]}" go run generate.go)
  "${NICE[@]}" go build -o "$OUT/pulumi-resource-kubernetes" \
    -ldflags "-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$k8s_version" \
    ./cmd/pulumi-resource-kubernetes
)

log "policy pack virtualenv from policies/requirements.txt"
if command -v uv >/dev/null 2>&1; then
  uv venv --quiet --allow-existing --python 3.11 "$OUT/policy-venv"
  uv pip install --quiet --python "$OUT/policy-venv/bin/python" -r "$REPO/policies/requirements.txt"
else
  python3 -m venv "$OUT/policy-venv"
  "$OUT/policy-venv/bin/pip" install --quiet -r "$REPO/policies/requirements.txt"
fi

"$OUT/pulumi" version
echo "$STAMP" >"$OUT/VERSION"
log "done: export MLPLATFORM_ENGINE_DIR=$OUT"
