from atomtrain.cli import main


raise SystemExit(main())
