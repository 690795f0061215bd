from ocimodel.cli.entry import main

main()
