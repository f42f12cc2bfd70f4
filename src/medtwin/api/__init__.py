"""medtwin.api"""
