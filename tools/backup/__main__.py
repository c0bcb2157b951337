from tools.backup.cli import main

main()
