from services.auth.cli import main

main()
