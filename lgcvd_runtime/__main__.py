"""`python -m lgcvd_runtime`: the same command line as `lgcvd-run`."""

from lgcvd_runtime.cli import main

main(prog_name="lgcvd-run")
