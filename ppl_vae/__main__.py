import sys

from ppl_vae.cli.main import main

sys.exit(main())
