import sys
from pathlib import Path

# The program's modules sit next to Pulumi.yaml, as `pulumi up` sees them.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
