"""The AWS side of batchsweep: the CloudFormation stack, the task image and `doctor`.

    template.py the CloudFormation template (template.yaml): its text, parameters, defaults and checks
    stack.py    up, status, down, stack_outputs (what the engine reads)
    image.py    the task image: Dockerfile, content-hash tag, docker build/push to the stack's ECR
    doctor.py   one ✓/✗ line per thing a run on AWS Batch needs
    cli.py      `register(subparsers)`: the `infra`, `image` and `doctor` commands

Nothing here imports boto3 at module level, so `batchsweep --help` stays fast.
"""
