"""medtwin.pharmaco"""
