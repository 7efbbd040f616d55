"""Entry point: `pulumi up` runs this file."""

import program

program.main()
