"""`python -m lgcvd_runtime`: the same command line as `lgcvd-run`."""

from lgcvd_runtime.cli.run import main

if __name__ == "__main__":  # importing the module (e.g. to check imports) runs nothing
    main(prog_name="lgcvd-run")
