"""`python -m convertkit.sandbox`: the same flags and SANDBOX_* variables as before the split."""

from .server import main

raise SystemExit(main())
