from tools.deadletters.cli import main

main()
