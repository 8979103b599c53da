"""``python -m cascade_features``: run the feature service (settings from ``CASCADE_*``)."""

from cascade_features.service import FeaturesApp
from cascade_features.settings import FeaturesSettings
from cascade_platform.server import main

if __name__ == "__main__":
    main(FeaturesApp, FeaturesSettings)
