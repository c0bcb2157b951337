from tools.simulator.cli import main

main()
