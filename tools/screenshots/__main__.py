from tools.screenshots.run import main

main()
