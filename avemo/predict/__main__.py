"""`python -m avemo.predict ...`: the same command as `avemo predict ...`."""
from .cli import main

main()
