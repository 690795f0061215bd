from ocimodel.cli.app import main

main()
