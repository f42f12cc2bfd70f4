"""medtwin.security"""
