"""medtwin.physiology"""
