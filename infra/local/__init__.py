"""The local stack: moto, a Slack stand-in, in-process Lambdas, a bus dispatcher and EC2 hosts on one machine."""
