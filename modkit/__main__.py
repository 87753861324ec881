from modkit.cli.main import main

main()
