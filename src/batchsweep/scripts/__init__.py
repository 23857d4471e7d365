"""What a script accepts (argparse, optparse, click/typer, fire, Hydra, env, globals), how params reach it."""
