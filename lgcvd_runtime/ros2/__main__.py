"""`python -m lgcvd_runtime.ros2`: the same command line as `lgcvd-ros2`."""

from lgcvd_runtime.ros2.cli import main

if __name__ == "__main__":  # importing the module (e.g. to check imports) runs nothing
    main(prog_name="lgcvd-ros2")
