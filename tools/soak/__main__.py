from tools.soak.cli import main

main()
