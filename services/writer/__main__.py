from services.writer.main import main

main()
