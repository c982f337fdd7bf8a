"""The command line `python -m compare`: parses flags, reads scenarios, checks every input before anything is
measured (bad input: one `error:` line, exit 2), and hands a RunConfig to run/. May import run/ and below."""
