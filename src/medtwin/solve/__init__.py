"""medtwin.solve"""
