"""Entry point for `pulumi up`: the platform program in mlplatform.program."""

from mlplatform.program import main

main()
