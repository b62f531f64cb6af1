"""Attribute verifier: does a segmenter's mask show the colour and shape the query names?"""
from .configuration_attribute_verifier import AttributeVerifierConfig
from .modeling_attribute_verifier import AttributeVerifierModel
from .processing_attribute_verifier import AttributeVerifierProcessor

__all__ = ["AttributeVerifierConfig", "AttributeVerifierModel", "AttributeVerifierProcessor"]
