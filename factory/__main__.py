import sys

from factory.cli.main import main

sys.exit(main())
