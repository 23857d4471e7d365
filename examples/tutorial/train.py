"""Toy training script in the style of the AWS Batch tutorials.

Computes a result from two integers, prints it as JSON on its last stdout line
and pickles the result dict to ``<save_name>.pkl`` in the working directory.

    python train.py --var_a 2 --var_b 3 --save_name run_2_3
"""
import argparse
import json
import pickle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--var_a", type=int, default=1, help="first factor")
    parser.add_argument("--var_b", type=int, default=1, help="second factor")
    parser.add_argument("--save_name", type=str, required=True, help="pickle file name (without .pkl)")
    args = parser.parse_args()

    # A small deterministic "training" step: product plus the sum of squares up to var_a + var_b.
    bonus = sum(i * i for i in range(args.var_a + args.var_b))
    result = {"var_a": args.var_a, "var_b": args.var_b, "result": args.var_a * args.var_b, "bonus": bonus}

    with open(f"{args.save_name}.pkl", "wb") as f:
        pickle.dump(result, f)
    print(f"training with var_a={args.var_a} var_b={args.var_b}")
    print(json.dumps({"result": result["result"], "bonus": bonus}))


if __name__ == "__main__":
    main()
