"""Project packages. Each sub-package registers its modules into OpenMMLab registries on import."""
