"""The HTTP surface: request and response models, routing and the alert webhook's token check."""
