"""``python -m collage_ext`` runs the command-line tool."""

from collage_ext.cli import main

raise SystemExit(main())
