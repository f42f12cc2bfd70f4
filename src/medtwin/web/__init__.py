"""medtwin.web"""
