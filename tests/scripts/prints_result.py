"""Prints its result and pickles it under a required --save_name; knows nothing of metrics.json."""
import argparse
import pickle

p = argparse.ArgumentParser()
p.add_argument("--var_a", type=int, required=True)
p.add_argument("--var_b", type=int, required=True)
p.add_argument("--save_name", required=True)
args = p.parse_args()
result = {"sum": args.var_a + args.var_b, "product": args.var_a * args.var_b}
with open(f"{args.save_name}.pkl", "wb") as f:
    pickle.dump(result, f)
print(f"loss={args.var_a - args.var_b} acc={args.var_b / 10}")
print(result["product"])
