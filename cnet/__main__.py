from cnet.cli import main

raise SystemExit(main())
