from services.query_api.main import main

main()
