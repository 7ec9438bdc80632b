#!/usr/bin/env python3
"""The smallest data-line filter in Python (the project's SDK): every
message line back unchanged. bench/filters.sh measures with it what a
Python data-line filter costs the daemon's intake.

    PYTHONPATH=sdk-python/src python3 bench/filter_passthrough.py
"""

from smtpd_sdk import filter

if __name__ == "__main__":
    filter.run(data_line=lambda session, line: None)
