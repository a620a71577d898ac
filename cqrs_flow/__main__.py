from cqrs_flow.cli import main

main()
