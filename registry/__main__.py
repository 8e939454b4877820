from registry.app.main import main

main()
