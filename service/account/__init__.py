"""The account's relationship with a user: does this user follow the Official Account?"""
