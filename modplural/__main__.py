import sys

from modplural.cli import main

sys.exit(main())
