"""transferlab: re-testing what pretraining gives a vision model and what fine-tuning does to it."""
import warnings

# timm imports huggingface_hub, which imports tqdm.auto; without ipywidgets that warns in every
# notebook. Our own progress bars are plain tqdm.
warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"
