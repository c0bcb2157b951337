from services.ingest_gateway.main import main

main()
