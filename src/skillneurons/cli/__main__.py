import sys

from skillneurons.cli import main

sys.exit(main())
