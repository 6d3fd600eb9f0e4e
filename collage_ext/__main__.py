"""``python -m collage_ext`` runs the command-line tool."""

from .cli import main

raise SystemExit(main())
