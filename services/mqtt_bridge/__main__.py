from services.mqtt_bridge.main import main

main()
