import signal
import sys

from citypath.cli import main

signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `python -m citypath ... | head` ends quietly
sys.exit(main())
