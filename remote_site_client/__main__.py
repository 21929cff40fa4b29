"""`python -m remote_site_client` runs tp-site."""

import sys

from remote_site_client.cli import main

sys.exit(main())
