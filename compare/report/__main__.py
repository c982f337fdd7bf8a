import sys

from compare.report.command import main

if __name__ == "__main__":  # python -m compare.report
    sys.exit(main())
