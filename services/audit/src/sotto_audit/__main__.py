from sotto_audit.cli import main

main()
